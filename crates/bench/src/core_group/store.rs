//! Figure 1, the store: 100 commits of 100 small status files through `datakit_ci_store`, versus
//! the same commits made by `git` plumbing processes; and the latency of one-file commits.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

use datakit_ci_store::{Branch, BranchName, CommitId, Store, StorePath};

use crate::Scale;
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

/// The branch written, as the engine writes statuses (DESIGN §6.1).
const BRANCH: &str = "github-metadata";
/// Commits in the comparison.
const COMMITS: usize = 100;
/// Status files per commit.
const FILES_PER_COMMIT: usize = 100;
/// How much faster than git plumbing the store should be.
const SPEED_UP_TARGET: f64 = 20.0;
/// Median latency target of a one-file commit, in milliseconds.
const LATENCY_TARGET_MS: f64 = 1.0;

/// Sizes of the store figures.
struct Sizes {
    /// Commits the plumbing baseline really makes (the first ones), extrapolated to [`COMMITS`].
    plumbing_sample: usize,
    /// One-file commits timed for the latency figures.
    latency_commits: usize,
}

impl Sizes {
    fn new(scale: Scale) -> Self {
        match scale {
            Scale::Full => Sizes {
                plumbing_sample: COMMITS,
                latency_commits: 1000,
            },
            Scale::Quick => Sizes {
                plumbing_sample: 10,
                latency_commits: 200,
            },
        }
    }
}

/// Measures the store figures.
pub(super) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let sizes = Sizes::new(scale);
    let dir = tempfile::tempdir().context("make a temporary directory")?;
    let updates = StatusUpdates::new();
    let latency_path = StorePath::new(status_path(&updates.commits[0].hash, "latency"))?;

    let store = Store::open(&dir.path().join("state.git")).context("open the store")?;
    let branch = store.branch(&BranchName::new(BRANCH)?);
    let started = Instant::now();
    let commits = commit_through_store(&branch, &updates).await?;
    let store_time = started.elapsed();

    let sample = sizes.plumbing_sample;
    let (git_dir, scratch) = (dir.path().join("plumbing.git"), dir.path().join("blobs"));
    let (plumbing_sample_time, plumbing_tree) = tokio::task::spawn_blocking(move || {
        let mut plumbing = Plumbing::init(git_dir, scratch)?;
        let started = Instant::now();
        let mut root = String::new();
        for update in &updates.commits[..sample] {
            root = plumbing.commit(update)?;
        }
        anyhow::Ok((started.elapsed(), root))
    })
    .await??;
    let store_tree = root_tree(&store, commits[sample - 1]).await?;
    ensure!(
        plumbing_tree == store_tree,
        "the plumbing baseline built tree {plumbing_tree} for commit {sample}, the store {store_tree}: \
         they do not do the same work"
    );
    let plumbing_time = plumbing_sample_time.mul_f64(COMMITS as f64 / sample as f64);

    let shape = format!("{COMMITS} commits of {FILES_PER_COMMIT} files");
    report.add(Figure::seconds(
        format!("store: {shape}, datakit-ci store"),
        store_time,
    ));
    let plumbing_name = if sample == COMMITS {
        format!("store: {shape}, git plumbing processes")
    } else {
        format!(
            "store: {shape}, git plumbing processes (first {sample} commits timed, extrapolated ×{})",
            COMMITS / sample
        )
    };
    report.add(Figure::seconds(plumbing_name, plumbing_time));
    report.add(
        Figure::new(
            "store: speed-up over git plumbing",
            plumbing_time.as_secs_f64() / store_time.as_secs_f64(),
            "×",
        )
        .target(Target::AtLeast(SPEED_UP_TARGET)),
    );

    let latencies = one_file_commits(&branch, &latency_path, sizes.latency_commits).await?;
    let count = latencies.len();
    report.add(
        Figure::millis(
            format!("store: one-file commit latency, median of {count}"),
            quantile(&latencies, 0.5),
        )
        .target(Target::AtMost(LATENCY_TARGET_MS)),
    );
    report.add(Figure::millis(
        format!("store: one-file commit latency, p99 of {count}"),
        quantile(&latencies, 0.99),
    ));
    Ok(())
}

/// Makes the commits of `updates` through the store, returning their ids in order.
async fn commit_through_store(
    branch: &Branch,
    updates: &StatusUpdates,
) -> anyhow::Result<Vec<CommitId>> {
    let mut commits = Vec::with_capacity(updates.commits.len());
    for update in &updates.commits {
        let mut transaction = branch.transaction().await?;
        for (test, state) in &update.files {
            let path = StorePath::new(status_path(&update.hash, test))?;
            transaction.create_file(&path, state)?;
        }
        commits.push(transaction.commit(&update.message()).await?);
    }
    Ok(commits)
}

/// Times `count` commits of one file each, at `path` (transaction opened to commit returned).
async fn one_file_commits(
    branch: &Branch,
    path: &StorePath,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(count);
    for index in 0..count {
        let started = Instant::now();
        let mut transaction = branch.transaction().await?;
        transaction.create_file(path, format!("run {index}"))?;
        transaction.commit("Latency probe").await?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

/// The id of the root tree of `commit`, in hex.
async fn root_tree(store: &Store, commit: CommitId) -> anyhow::Result<String> {
    let commit = store.commit(commit).await?;
    let tree = commit
        .tree()
        .tree_id(&StorePath::root())?
        .context("the root of a commit's tree is not a tree")?;
    Ok(tree.to_string())
}

fn status_path(hash: &str, test: &str) -> String {
    format!("u/r/commit/{hash}/status/ci/datakit/{test}/state")
}

/// The workload: per commit, the state of every test of one source commit.
struct StatusUpdates {
    commits: Vec<CommitUpdate>,
}

struct CommitUpdate {
    /// The source commit whose statuses are updated (40 hex digits).
    hash: String,
    /// `(test name, state)`.
    files: Vec<(String, &'static str)>,
}

impl CommitUpdate {
    fn message(&self) -> String {
        format!("Update statuses of {}", self.hash)
    }
}

impl StatusUpdates {
    fn new() -> Self {
        const STATES: [&str; 4] = ["pending", "success", "failure", "error"];
        let commits = (0..COMMITS as u64)
            .map(|commit| {
                let (a, b) = (splitmix(commit), splitmix(commit ^ 0x5eed));
                CommitUpdate {
                    hash: format!("{a:016x}{b:016x}{:08x}", (a ^ b) as u32),
                    files: (0..FILES_PER_COMMIT)
                        .map(|test| {
                            let state = STATES[(commit as usize + test) % STATES.len()];
                            (format!("test{test}"), state)
                        })
                        .collect(),
                }
            })
            .collect();
        StatusUpdates { commits }
    }
}

/// A well-mixed 64-bit value from `seed`.
fn splitmix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The baseline: the same commits made by `git` plumbing commands in a bare repository, the way a
/// store driving `git` processes would make them (batched where git allows it).
struct Plumbing {
    git_dir: PathBuf,
    /// Where blob contents are written for `hash-object --stdin-paths`.
    scratch: PathBuf,
    /// Tree of each `commit/<hash>` directory written so far.
    commit_trees: BTreeMap<String, String>,
    head: Option<String>,
}

impl Plumbing {
    fn init(git_dir: PathBuf, scratch: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("make directory {}", scratch.display()))?;
        git_command()
            .args(["init", "--bare", "--quiet"])
            .arg(&git_dir)
            .status()
            .context("run git init")?
            .success()
            .then_some(())
            .context("git init --bare failed")?;
        Ok(Plumbing {
            git_dir,
            scratch,
            commit_trees: BTreeMap::new(),
            head: None,
        })
    }

    /// Makes one commit of `update` and moves the branch to it; returns the root tree.
    fn commit(&mut self, update: &CommitUpdate) -> anyhow::Result<String> {
        let mut paths = String::new();
        for (index, (_, state)) in update.files.iter().enumerate() {
            let path = self.scratch.join(format!("blob{index}"));
            std::fs::write(&path, state).with_context(|| format!("write {}", path.display()))?;
            paths.push_str(path.to_str().context("scratch path is not UTF-8")?);
            paths.push('\n');
        }
        let blobs = self.git(&["hash-object", "-w", "--stdin-paths"], &paths)?;
        let leaf_input: Vec<String> = blobs
            .lines()
            .map(|blob| format!("100644 blob {blob}\tstate\n"))
            .collect();
        let leaves = self.git(&["mktree", "--batch"], &leaf_input.join("\n"))?;
        let leaves: Vec<&str> = leaves.lines().collect();
        if leaves.len() != update.files.len() {
            bail!(
                "git mktree --batch made {} trees for {} tests",
                leaves.len(),
                update.files.len()
            );
        }
        let datakit = self.mktree(
            update
                .files
                .iter()
                .zip(&leaves)
                .map(|((test, _), tree)| (test.as_str(), *tree)),
        )?;
        let ci = self.mktree([("datakit", datakit.as_str())])?;
        let status = self.mktree([("ci", ci.as_str())])?;
        let source = self.mktree([("status", status.as_str())])?;
        self.commit_trees.insert(update.hash.clone(), source);
        let commit_dir = self.mktree(
            self.commit_trees
                .iter()
                .map(|(hash, tree)| (hash.as_str(), tree.as_str())),
        )?;
        let repo = self.mktree([("commit", commit_dir.as_str())])?;
        let user = self.mktree([("r", repo.as_str())])?;
        let root = self.mktree([("u", user.as_str())])?;

        let message = update.message();
        let mut commit_args = vec!["commit-tree", root.as_str(), "-m", message.as_str()];
        if let Some(parent) = &self.head {
            commit_args.extend(["-p", parent.as_str()]);
        }
        let commit = self.git(&commit_args, "")?.trim().to_owned();
        let reference = format!("refs/heads/{BRANCH}");
        let mut update_args = vec!["update-ref", reference.as_str(), commit.as_str()];
        if let Some(parent) = &self.head {
            update_args.push(parent.as_str());
        }
        self.git(&update_args, "")?;
        self.head = Some(commit);
        Ok(root)
    }

    /// Writes a tree of subdirectories `(name, tree id)`.
    fn mktree<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<String> {
        let input: String = entries
            .into_iter()
            .map(|(name, tree)| format!("040000 tree {tree}\t{name}\n"))
            .collect();
        Ok(self.git(&["mktree"], &input)?.trim().to_owned())
    }

    /// Runs `git <args>` on the bare repository with `input` on stdin; returns stdout.
    fn git(&self, args: &[&str], input: &str) -> anyhow::Result<String> {
        let mut child = git_command()
            .arg("--git-dir")
            .arg(&self.git_dir)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start git {}", args.join(" ")))?;
        // Inputs and outputs are a few KiB, below a pipe's capacity: writing first cannot block.
        let mut stdin = child.stdin.take().context("git's stdin is piped")?;
        stdin
            .write_all(input.as_bytes())
            .with_context(|| format!("write to git {}", args.join(" ")))?;
        drop(stdin);
        let output = child
            .wait_with_output()
            .with_context(|| format!("wait for git {}", args.join(" ")))?;
        if !output.status.success() {
            bail!(
                "git {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        String::from_utf8(output.stdout).context("git printed non-UTF-8 output")
    }
}

/// `git` isolated from the user's and the system's configuration, with a fixed identity.
fn git_command() -> Command {
    let mut command = Command::new("git");
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "datakit-ci")
        .env("GIT_AUTHOR_EMAIL", "datakit-ci@localhost")
        .env("GIT_COMMITTER_NAME", "datakit-ci")
        .env("GIT_COMMITTER_EMAIL", "datakit-ci@localhost");
    command
}
