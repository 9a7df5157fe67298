//! Figures 2 and 3: the whole local CI in-process (`LocalCi`: bridge, engine, Git plugin running
//! `sh -c true` in a shared clone of each head) watching a real repository: the latency from a
//! new commit to the `success` status, and the time to test many new branches against the
//! floor of the checkouts the plugin makes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::sync::broadcast::{self, error::RecvError};

use datakit_ci::engine::StatusChange;
use datakit_ci::git::SharedClone;
use datakit_ci::local::{LocalCi, LocalCiConfig, LocalRepoSpec, ShellConfig, TestSpec};
use datakit_ci::term::CommitHash;

use crate::Scale;
use crate::engine_group::sys::{Background, CpuTimes};
use crate::git::{command as git, output, run_with_input};
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

/// The forge id of the watched repository.
const REPO_ID: &str = "local/src";
/// The test's name and command.
const TEST: &str = "true";
/// Median push-to-status latency target, in milliseconds.
const LATENCY_TARGET_MS: f64 = 100.0;
/// How many times the floor the throughput run may take.
const FLOOR_TARGET: f64 = 2.0;
/// How long the CI is left idle after a throughput run before the floor is timed.
const SETTLE: Duration = Duration::from_secs(1);
/// The longest one wait may take before the run fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(600);

/// Sizes of the local-CI figures.
struct Sizes {
    /// Commits timed for the latency.
    commits: usize,
    /// New branches of each throughput round.
    branches: usize,
    /// Throughput rounds, each the CI's run then the floor on the same commits.
    rounds: usize,
}

impl Sizes {
    fn new(scale: Scale) -> Self {
        match scale {
            Scale::Full => Sizes {
                commits: 20,
                branches: 500,
                rounds: 3,
            },
            Scale::Quick => Sizes {
                commits: 10,
                branches: 50,
                rounds: 2,
            },
        }
    }
}

/// Measures figures 2 (push-to-status latency) and 3 (throughput against the floor).
pub(super) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    let sizes = Sizes::new(scale);
    let mut ci = Harness::start().await.context("start the local CI")?;

    let latencies = ci.latencies(sizes.commits).await.context("latency")?;
    let count = latencies.len();
    let from_commit: Vec<Duration> = latencies.iter().map(|l| l.from_commit).collect();
    let with_git_commit: Vec<Duration> = latencies.iter().map(|l| l.with_git_commit).collect();
    report.add(
        Figure::millis(
            format!(
                "local CI: new commit on a branch → `{TEST}` success status, median of {count}"
            ),
            quantile(&from_commit, 0.5),
        )
        .target(Target::AtMost(LATENCY_TARGET_MS)),
    );
    report.add(Figure::millis(
        format!("local CI: new commit on a branch → `{TEST}` success status, p90 of {count}"),
        quantile(&from_commit, 0.9),
    ));
    report.add(Figure::millis(
        format!("local CI: the same counting the `git commit` command itself, median of {count}"),
        quantile(&with_git_commit, 0.5),
    ));

    let (n, rounds) = (sizes.branches, sizes.rounds);
    // Runs and floors alternate, so that both see the same state of the machine and of the
    // CI's clone (which the floor checks out from, as the plugin does).
    let mut runs = Vec::with_capacity(rounds);
    let mut floors = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let commits = ci.prepare_commits(round, n).await?;
        let run = ci
            .new_branches(round, &commits)
            .await
            .context("throughput")?;
        // The CI's trailing work (history and status commits after the last status announced,
        // pack maintenance) must not run during the floor.
        tokio::time::sleep(SETTLE).await;
        let floor = floor(&ci.clone_dir, &commits).await.context("floor")?;
        println!(
            "note: throughput round {}: {n} branches in {:.2} s, floor {:.2} s, {:.2}×",
            round + 1,
            run.time.as_secs_f64(),
            floor.time.as_secs_f64(),
            run.time.as_secs_f64() / floor.time.as_secs_f64()
        );
        runs.push(run);
        floors.push(floor);
    }
    ci.stop().await?;
    let throughput = Run::total(&runs);
    let floor = Run::total(&floors);

    report.add(Figure::seconds(
        format!(
            "local CI: {n} new branches on {n} commits → all `{TEST}` statuses final, total of {rounds} rounds"
        ),
        throughput.time,
    ));
    report.add(Figure::seconds(
        format!(
            "local CI: floor, {n} × (the plugin's shared clone + read-tree + sh -c true, concurrent), total of {rounds} rounds"
        ),
        floor.time,
    ));
    report.add(
        Figure::new(
            format!("local CI: {n} branches, time over the floor (totals of {rounds} alternating rounds)"),
            throughput.time.as_secs_f64() / floor.time.as_secs_f64(),
            "×",
        )
        .target(Target::AtMost(FLOOR_TARGET)),
    );
    let per_build = |cpu: Duration| cpu.as_secs_f64() * 1e3 / (n * rounds) as f64;
    report.add(Figure::new(
        "local CI: CPU per build, the bench process's own threads (bridge + engine + plugin; git/sh children excluded)",
        per_build(throughput.cpu.own),
        "ms",
    ));
    report.add(Figure::new(
        "local CI: CPU per build, child processes (git read-tree, sh; git fetch only if needed)",
        per_build(throughput.cpu.children),
        "ms",
    ));
    report.add(Figure::new(
        "local CI: CPU per build, floor's child processes (git read-tree, sh)",
        per_build(floor.cpu.children),
        "ms",
    ));
    if throughput.failed > 0 {
        report.add(Figure::new(
            format!("local CI: builds that failed, of {}", n * rounds),
            throughput.failed as f64,
            "builds",
        ));
    }
    Ok(())
}

/// What a run of many builds took.
struct Run {
    time: Duration,
    cpu: CpuTimes,
    failed: usize,
}

impl Run {
    /// The sum of `runs`.
    fn total(runs: &[Run]) -> Run {
        let mut total = Run {
            time: Duration::ZERO,
            cpu: CpuTimes::zero(),
            failed: 0,
        };
        for run in runs {
            total.time += run.time;
            total.cpu = total.cpu.plus(run.cpu);
            total.failed += run.failed;
        }
        total
    }
}

/// A repository and a `LocalCi` watching it, running in the background.
struct Harness {
    dir: tempfile::TempDir,
    repo: PathBuf,
    /// The CI's own clone, which the plugin's temporary clones are made from.
    clone_dir: PathBuf,
    events: broadcast::Receiver<StatusChange>,
    /// The CI's engine, to read the whole message of a failure (statuses are cut at 140 bytes).
    engine: datakit_ci::engine::Engine,
    running: Background<datakit_ci::local::RunError>,
}

impl Harness {
    /// Makes a repository with one commit on `main`, starts the CI on it and waits for that
    /// commit's status.
    async fn start() -> anyhow::Result<Harness> {
        let dir = tempfile::tempdir().context("make a temporary directory")?;
        let repo = dir.path().join("src");
        std::fs::create_dir(&repo)?;
        let mut init = git(&repo);
        init.args(["init", "--quiet", "--initial-branch=main"]);
        output(init).await?;
        let (first, _) = commit(&repo, "First").await?;

        let state_dir = dir.path().join("state");
        let id: datakit_ci::term::RepoId = REPO_ID.parse()?;
        let clone_dir = state_dir.join("repos").join(id.user()).join(id.repo());
        let ci = LocalCi::start(LocalCiConfig {
            github: None,
            repos: vec![LocalRepoSpec {
                id,
                path: repo.clone(),
            }],
            // No job limit: the bench measures the engine, not a queue.
            shell: ShellConfig::new(vec![TestSpec {
                name: TEST.to_owned(),
                command: TEST.to_owned(),
            }]),
            state_dir,
            web_ui: "https://ci.example/".to_owned(),
            canaries: Vec::new(),
            web: None,
            notify: None,
            max_log_size: datakit_ci::log::DEFAULT_SAVED_LIMIT,
            keep_logs: None,
        })
        .await?;
        let events = ci.engine().subscribe();
        let engine = ci.engine().clone();
        let running = Background::spawn(|cancel| ci.run(cancel));
        let mut harness = Harness {
            dir,
            repo,
            clone_dir,
            events,
            engine,
            running,
        };
        let failed = harness.wait_final(&BTreeSet::from([first])).await?;
        ensure!(failed == 0, "the first commit's test failed");
        Ok(harness)
    }

    /// Commits on `main` `count` times, each time waiting for the new commit's `success`.
    async fn latencies(&mut self, count: usize) -> anyhow::Result<Vec<Latency>> {
        let mut times = Vec::with_capacity(count);
        for round in 0..count {
            // Let the previous round's trailing commits and file events pass.
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.drain();
            let started = Instant::now();
            let (hash, committed) = commit(&self.repo, &format!("Change {round}")).await?;
            let failed = self.wait_final(&BTreeSet::from([hash])).await?;
            times.push(Latency {
                from_commit: committed.elapsed(),
                with_git_commit: started.elapsed(),
            });
            ensure!(failed == 0, "the test failed on commit {round}");
        }
        Ok(times)
    }

    /// Makes `count` root commits with contents distinct from every other round's, under
    /// `refs/prep/<round>/` (which the bridge ignores), with one `git fast-import`; returns their
    /// hashes in order.
    async fn prepare_commits(&self, round: usize, count: usize) -> anyhow::Result<Vec<String>> {
        let mut stream = String::new();
        for i in 0..count {
            let message = format!("Commit {i} of round {round}\n");
            let contents = format!("contents {i} of round {round}\n");
            write!(
                stream,
                "commit refs/prep/{round}/c{i:05}\ncommitter Bench <bench@example.com> {} +0000\ndata {}\n{message}M 644 inline file.txt\ndata {}\n{contents}\n",
                1_700_000_000 + i,
                message.len(),
                contents.len()
            )?;
        }
        stream.push_str("done\n");
        let mut import = git(&self.repo);
        import.args(["fast-import", "--quiet", "--done"]);
        run_with_input(import, stream).await?;
        let mut list = git(&self.repo);
        list.args([
            "for-each-ref",
            "--format=%(objectname)",
            &format!("refs/prep/{round}/"),
        ]);
        let hashes: Vec<String> = output(list).await?.lines().map(str::to_owned).collect();
        ensure!(
            hashes.len() == count,
            "made {} commits, not {count}",
            hashes.len()
        );
        // Let the bridge's sync of those ref events (which changes nothing) pass.
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(hashes)
    }

    /// Creates one branch per commit (`r<round>-t<i>`) with one `git update-ref --stdin` and
    /// waits until every commit's status is final.
    async fn new_branches(&mut self, round: usize, commits: &[String]) -> anyhow::Result<Run> {
        let mut input = String::new();
        for (i, hash) in commits.iter().enumerate() {
            writeln!(input, "create refs/heads/r{round}-t{i:05} {hash}")?;
        }
        self.drain();
        let cpu = CpuTimes::now()?;
        let started = Instant::now();
        let mut update = git(&self.repo);
        update.args(["update-ref", "--stdin"]);
        run_with_input(update, input).await?;
        let failed = self.wait_final(&commits.iter().cloned().collect()).await?;
        Ok(Run {
            time: started.elapsed(),
            cpu: CpuTimes::now()?.since(cpu),
            failed,
        })
    }

    /// Waits until the test's status on each of `commits` is `success` or `failure`; returns how
    /// many failed (the first failures go to stderr).
    async fn wait_final(&mut self, commits: &BTreeSet<String>) -> anyhow::Result<usize> {
        let mut finals: BTreeMap<String, bool> = BTreeMap::new();
        let (events, engine) = (&mut self.events, &self.engine);
        let wait = async {
            while finals.len() < commits.len() {
                match events.recv().await {
                    Ok(change) => {
                        let hash = change.commit.as_str();
                        if change.state != "pending" && commits.contains(hash) {
                            let ok = change.state == "success";
                            if !ok && finals.values().filter(|ok| !**ok).count() < 3 {
                                let whole = engine
                                    .target(&change.target)
                                    .and_then(|t| t.jobs.into_iter().find(|j| j.name == change.job))
                                    .and_then(|j| j.output)
                                    .map(|o| o.result.description().to_owned())
                                    .unwrap_or(change.description);
                                eprintln!(
                                    "warning: `{}` on {} ({hash}) is {}: {whole}",
                                    change.job, change.target, change.state
                                );
                            }
                            finals.insert(hash.to_owned(), ok);
                        }
                    }
                    Err(RecvError::Lagged(n)) => bail!("missed {n} status events"),
                    Err(RecvError::Closed) => bail!("the engine stopped"),
                }
            }
            Ok(())
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .with_context(|| {
                format!(
                    "{} of {} statuses final after {PATIENCE:?}",
                    finals.len(),
                    commits.len()
                )
            })??;
        Ok(finals.values().filter(|ok| !**ok).count())
    }

    /// Forgets the events received so far.
    fn drain(&mut self) {
        while !matches!(
            self.events.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ) {}
    }

    /// Stops the CI and deletes its repositories.
    async fn stop(self) -> anyhow::Result<()> {
        self.running.stop().await.context("the local CI")?;
        drop(self.dir);
        Ok(())
    }
}

/// One commit's push-to-status latency.
struct Latency {
    /// From the moment `git commit` returned (the branch has moved) to the final status.
    from_commit: Duration,
    /// The same, counting the `git commit` command itself.
    with_git_commit: Duration,
}

/// `git commit --allow-empty` on the current branch; returns the new head and when the commit
/// command returned.
async fn commit(repo: &Path, message: &str) -> anyhow::Result<(String, Instant)> {
    let mut commit = git(repo);
    commit.args([
        "commit",
        "--quiet",
        "--allow-empty",
        "--no-verify",
        "-m",
        message,
    ]);
    output(commit).await?;
    let committed = Instant::now();
    let mut head = git(repo);
    head.args(["rev-parse", "HEAD"]);
    Ok((output(head).await?.trim().to_owned(), committed))
}

/// What the plugin's builds cannot avoid, with the plugin's parallelism (`Repo::with_clone`,
/// which takes no lock): for each commit concurrently, the plugin's own checkout method
/// ([`SharedClone::checkout`] of the CI's clone into a fresh temporary directory), `sh -c true`
/// there, and removing the clone.
async fn floor(clone_dir: &Path, commits: &[String]) -> anyhow::Result<Run> {
    let clones = SharedClone::new(clone_dir)?;
    let cpu = CpuTimes::now()?;
    let started = Instant::now();
    let builds: Vec<_> = commits
        .iter()
        .map(|hash| {
            let (clones, hash) = (clones.clone(), hash.parse());
            tokio::spawn(async move { checkout_and_test(&clones, &hash?).await })
        })
        .collect();
    for build in builds {
        build.await.context("a floor build")??;
    }
    Ok(Run {
        time: started.elapsed(),
        cpu: CpuTimes::now()?.since(cpu),
        failed: 0,
    })
}

async fn checkout_and_test(clones: &SharedClone, hash: &CommitHash) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("with_clone")
        .tempdir()
        .context("make a temporary directory")?;
    clones.checkout(hash, tmp.path(), None).await?;
    let mut test = tokio::process::Command::new("sh");
    test.args(["-c", TEST])
        .current_dir(tmp.path())
        .kill_on_drop(true);
    output(test).await?;
    tokio::task::spawn_blocking(move || tmp.close())
        .await
        .context("remove the clone")??;
    Ok(())
}
