//! The `pipeline` group (issue 17): what a head change costs when each commit's
//! `.datakit-ci.yml` decides the jobs, and how long a big file takes to parse and plan.
//!
//! - **docs-only change** — the whole local CI (`LocalCi`: bridge, engine, Git plugin, pipeline
//!   runner) on a repository whose file has 20 steps in a DAG, one of them a 3×3 matrix (28 jobs;
//!   every job's `inputs` is `src`, each script sleeps 0.1 s — a step that does some work, far
//!   less than a real build — and appends a line to a counter file), with 100
//!   branches (20 with `--quick`). A **full run** moves a branch to a commit that changes `src`
//!   (every job runs); a **docs-only** change moves it to a commit that changes only `docs/`
//!   (no job's inputs change). Each is timed from the ref update until all 29 statuses of the new
//!   commit (the jobs and `pipeline`) are announced; medians over rounds. Target: docs-only ≤ 5%
//!   of a full run, with 0 steps started. The docs-only time is also reported as it is: it is
//!   the whole cost of evaluating a head change (the bridge's sync, reading and checking the
//!   file, 29 cached lookups, one status commit), whatever the steps cost.
//! - **parse + plan, 500 jobs** — `pipeline::parse` and `Pipeline::jobs_for` of a file of 50
//!   steps with a 10-value matrix each (500 jobs, each needing the previous step), median of 20.
//!   Target: ≤ 10 ms.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use datakit_ci::engine::StatusChange;
use datakit_ci::local::{LocalCi, LocalCiConfig, LocalRepoSpec, ShellConfig};
use datakit_ci::pipeline::TargetKind;

use crate::Scale;
use crate::git::{git, git_stdin};
use crate::report::{Figure, Report, Target};
use crate::stats::quantile;

/// The jobs of the benchmark's file, plus the plan job.
const STATUSES: usize = 28 + 1;

/// Measures the group's figures, adding them to `report`.
pub(crate) async fn run(scale: Scale, report: &mut Report) -> anyhow::Result<()> {
    parse_and_plan(report)?;
    let (branches, rounds) = match scale {
        Scale::Full => (100, 5),
        Scale::Quick => (20, 2),
    };
    let mut bench = Bench::start(branches).await?;
    let result = bench.measure(rounds, report).await;
    bench.stop().await?;
    result
}

/// The parse + plan figure.
fn parse_and_plan(report: &mut Report) -> anyhow::Result<()> {
    let mut file = String::from("steps:\n");
    for step in 0..50 {
        writeln!(
            file,
            "  s{step:02}:\n    run: make part-{step}\n    inputs: [src/{step}]"
        )?;
        writeln!(file, "    matrix:\n      v: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]")?;
        if step > 0 {
            writeln!(file, "    needs: [s{:02}]", step - 1)?;
        }
    }
    let target = TargetKind::Branch("main".to_owned());
    let mut times = Vec::new();
    for _ in 0..20 {
        let started = Instant::now();
        let pipeline = datakit_ci::pipeline::parse(&file)
            .map_err(|e| anyhow::anyhow!("the bench's file is invalid: {e}"))?;
        let jobs = pipeline.jobs_for(&target, None);
        times.push(started.elapsed());
        ensure!(jobs.len() == 500, "{} jobs instead of 500", jobs.len());
    }
    times.sort();
    report.add(
        Figure::millis(
            "pipeline: parse + plan of a 500-job file",
            quantile(&times, 0.5),
        )
        .target(Target::AtMost(10.0)),
    );
    Ok(())
}

/// The benchmark's pipeline file: 19 plain steps in a binary-tree DAG and a 3×3 matrix step.
fn pipeline_file(counter: &Path) -> String {
    let counter = counter.display();
    let mut file = String::from("steps:\n");
    for step in 0..19 {
        let _ = writeln!(
            file,
            "  s{step:02}:\n    run: sleep 0.1 && echo s{step:02} >> '{counter}'\n    inputs: [src]"
        );
        if step > 0 {
            let _ = writeln!(file, "    needs: [s{:02}]", (step - 1) / 2);
        }
    }
    let _ = writeln!(
        file,
        "  m:\n    run: sleep 0.1 && echo m >> '{counter}'\n    inputs: [src]\n    needs: [s18]\n    matrix:\n      a: [1, 2, 3]\n      b: [x, y, z]"
    );
    file
}

struct Bench {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    counter: PathBuf,
    events: broadcast::Receiver<StatusChange>,
    cancel: CancellationToken,
    running: tokio::task::JoinHandle<Result<(), datakit_ci::local::RunError>>,
    round: usize,
}

impl Bench {
    /// A repository with `branches` branches on distinct commits sharing one `src`, the CI
    /// started on it, and every branch's statuses announced.
    async fn start(branches: usize) -> anyhow::Result<Bench> {
        let dir = tempfile::tempdir().context("make a temporary directory")?;
        let repo = dir.path().join("app");
        let counter = dir.path().join("steps-started");
        std::fs::create_dir_all(repo.join("src"))?;
        std::fs::create_dir_all(repo.join("docs"))?;
        git(&repo, &["init", "--quiet", "--initial-branch=main"]).await?;
        std::fs::write(repo.join(".datakit-ci.yml"), pipeline_file(&counter))?;
        std::fs::write(repo.join("src/lib"), "source 0\n")?;
        let mut heads = BTreeSet::new();
        let mut updates = String::new();
        for i in 0..branches {
            std::fs::write(repo.join("docs/index"), format!("docs of branch {i}\n"))?;
            git(&repo, &["add", "--all"]).await?;
            git(&repo, &["commit", "--quiet", "-m", &format!("branch {i}")]).await?;
            let hash = git(&repo, &["rev-parse", "HEAD"]).await?.trim().to_owned();
            writeln!(updates, "update refs/heads/b{i:03} {hash}")?;
            heads.insert(hash);
        }
        git_stdin(&repo, &["update-ref", "--stdin"], &updates).await?;
        // Later commits move no branch by themselves: only the measured ref update does.
        git(&repo, &["checkout", "--quiet", "--detach"]).await?;
        git(&repo, &["branch", "--quiet", "-D", "main"]).await?;
        let state_dir = dir.path().join("state");
        let started = Instant::now();
        let ci = LocalCi::start(LocalCiConfig {
            github: None,
            repos: vec![LocalRepoSpec {
                id: "bench/app".parse()?,
                path: repo.clone(),
            }],
            // No test on the command line: each commit's pipeline file.
            shell: ShellConfig::new(Vec::new()),
            state_dir,
            web_ui: "https://ci.example/".to_owned(),
            canaries: Vec::new(),
            web: None,
            notify: None,
            max_log_size: datakit_ci::log::DEFAULT_SAVED_LIMIT,
            keep_logs: None,
        })
        .await?;
        let mut events = ci.engine().subscribe();
        let cancel = CancellationToken::new();
        let running = tokio::spawn(ci.run(cancel.clone()));
        wait_for_successes(&mut events, &heads, None, heads.len() * STATUSES).await?;
        eprintln!(
            "pipeline: {branches} branches loaded in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(Bench {
            _dir: dir,
            repo,
            counter,
            events,
            cancel,
            running,
            round: 0,
        })
    }

    async fn measure(&mut self, rounds: usize, report: &mut Report) -> anyhow::Result<()> {
        let (mut full, mut docs) = (Vec::new(), Vec::new());
        let mut started_by_docs = 0;
        for _ in 0..rounds {
            full.push(self.change("src/lib").await?.0);
            let (time, steps) = self.change("docs/index").await?;
            docs.push(time);
            started_by_docs += steps;
        }
        full.sort();
        docs.sort();
        let (full, docs) = (quantile(&full, 0.5), quantile(&docs, 0.5));
        report.add(Figure::millis(
            "pipeline: full run of 28 jobs (median)",
            full,
        ));
        report.add(Figure::millis("pipeline: docs-only change (median)", docs));
        report.add(
            Figure::new(
                "pipeline: docs-only change / full run",
                100.0 * docs.as_secs_f64() / full.as_secs_f64(),
                "%",
            )
            .target(Target::AtMost(5.0)),
        );
        report.add(
            Figure::new(
                "pipeline: steps started by docs-only changes",
                started_by_docs as f64,
                "steps",
            )
            .target(Target::AtMost(0.0)),
        );
        Ok(())
    }

    /// Commits a change of `path` on branch `b000` and moves the branch there; the time until
    /// every status of the new commit is a success, and how many steps started meanwhile.
    async fn change(&mut self, path: &str) -> anyhow::Result<(Duration, usize)> {
        self.round += 1;
        // Let the previous round's trailing commits and file events pass.
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(self.repo.join(path), format!("round {}\n", self.round))?;
        git(&self.repo, &["add", "--all"]).await?;
        git(
            &self.repo,
            &["commit", "--quiet", "-m", &format!("round {}", self.round)],
        )
        .await?;
        let hash = git(&self.repo, &["rev-parse", "HEAD"])
            .await?
            .trim()
            .to_owned();
        // The commit's own file events (objects, index) make the bridge sync, and syncs start at
        // least 50 ms apart: let that pass, so that only the ref update is measured.
        tokio::time::sleep(Duration::from_millis(100)).await;
        while self.events.try_recv().is_ok() {}
        let before = self.steps_started();
        let started = Instant::now();
        git(&self.repo, &["update-ref", "refs/heads/b000", &hash]).await?;
        wait_for_successes(
            &mut self.events,
            &BTreeSet::from([hash]),
            Some("bench/app/heads/b000"),
            STATUSES,
        )
        .await?;
        Ok((started.elapsed(), self.steps_started() - before))
    }

    fn steps_started(&self) -> usize {
        std::fs::read_to_string(&self.counter)
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.running.await??;
        Ok(())
    }
}

/// Waits until `expected` success statuses of commits in `heads` (of `target`, if given) are
/// announced; a failure stops the bench.
async fn wait_for_successes(
    events: &mut broadcast::Receiver<StatusChange>,
    heads: &BTreeSet<String>,
    target: Option<&str>,
    expected: usize,
) -> anyhow::Result<()> {
    let mut seen = BTreeSet::new();
    let deadline = tokio::time::sleep(Duration::from_secs(600));
    tokio::pin!(deadline);
    while seen.len() < expected {
        let change = tokio::select! {
            change = events.recv() => change,
            () = &mut deadline => bail!("only {} of {expected} statuses after 10 minutes", seen.len()),
        };
        match change {
            Ok(change)
                if heads.contains(change.commit.as_str())
                    && target.is_none_or(|t| change.target.to_string() == t) =>
            {
                ensure!(
                    change.state != "failure",
                    "job {} of {} failed: {}",
                    change.job,
                    change.target,
                    change.description
                );
                if change.state == "success" {
                    seen.insert((change.target.to_string(), change.job));
                }
            }
            Ok(_) => {}
            Err(RecvError::Lagged(n)) => bail!("{n} status changes were missed"),
            Err(RecvError::Closed) => bail!("the engine stopped"),
        }
    }
    Ok(())
}
